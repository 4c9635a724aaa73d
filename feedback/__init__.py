"""Users' verdicts on the service's answers: stored (store.py), exported as training data (export.py)."""
