"""Command lines: thin absl entry points over `vqgen.stages` (main, demo, sample, evaluate, train_classifier).
`console.py` gives them one behaviour: progress and results on the console, the libraries' log lines in a file."""
