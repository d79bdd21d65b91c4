"""Real servers for tests: started on free loopback ports, stopped by PID."""
