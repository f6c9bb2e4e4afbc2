"""How deliveries leave the hub: HTTP requests and AMQP publishes, behind one small interface."""
