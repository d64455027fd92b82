"""The TWS stand-in and its simulated market."""
