"""`python -m straightflow` and `torchrun -m straightflow` enter the CLI here."""

from straightflow.cli.main import main

if __name__ == "__main__":
    main()
