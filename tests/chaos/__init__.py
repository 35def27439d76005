"""The chaos suite: run the real system under faults, record its history, check it."""
