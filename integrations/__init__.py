"""Partner SDK (signing, batching, retries) and outbound webhooks. Never imports `service`."""
