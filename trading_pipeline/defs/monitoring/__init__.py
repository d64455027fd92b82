"""Monitoring: the monitoring pass as a job, and the sensor that requests it in market hours."""
