"""What drives Temporal: the worker, the client SDK, schedules, namespace set-up, DLQ replays."""
