"""Built-in sample inputs for the demo and the tests, generated on demand."""
