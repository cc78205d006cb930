"""Load-test harness for osmium: drive external load generators and turn their reports into data."""
