"""What every hub process runs on: connections, embedded servers, the circuit breaker, the
rule index, and process helpers."""
