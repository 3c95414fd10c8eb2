"""What every layer may use: the clock, the names both the stack and the functions derive, settings."""
