"""pytest fixtures for the mock Security Service (filled in by the service work)."""
