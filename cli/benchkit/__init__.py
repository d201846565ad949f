"""The engine behind `python -m cli.bench`: streaming clients, load generators, statistics, reports."""
