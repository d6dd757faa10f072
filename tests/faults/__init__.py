"""Network faults between the app and its brokers, made by Toxiproxy (see toxiproxy.py)."""
