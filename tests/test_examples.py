"""The examples run end to end at a small size (their full size is for people, not CI)."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conditional_branches_example_trains_both_methods_and_writes_its_table_and_picture(tmp_path):
    example = _load("conditional_branches")
    table = example.main(["--out", str(tmp_path), "--steps", "60", "--n-train", "600", "--n", "64", "--width", "32"])
    assert {r["method"] for r in table} == {"FM + dopri5", "MeanFlow, 1 step", "MeanFlow from FM teacher, 1 step"}
    assert len(table) == 3 * len(example.CONTEXTS)
    assert all(r["W2"] > 0 and r["floor"] > 0 and 0 <= r["on"] <= 1 for r in table)
    assert (tmp_path / "branches.png").stat().st_size > 1000
    assert "W2 / floor" in (tmp_path / "table.md").read_text()


def test_the_branches_task_is_multimodal_given_c():
    """For a fixed context the three branches each get about a third of the true draws, all on a branch."""
    import torch

    example = _load("conditional_branches")
    y, _ = example.branch_points(torch.full((3000,), 0.3), torch.Generator().manual_seed(0))
    on, shares = example.branch_shares(y, 0.3)
    assert on > 0.97 and all(0.3 < s < 0.37 for s in shares)
