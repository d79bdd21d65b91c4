"""KEDA's external scaler protocol and the Python code generated from it."""
