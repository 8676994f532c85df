"""What a person reads after a run: aligned tables (also CSV and Markdown) and a self-contained HTML report."""
