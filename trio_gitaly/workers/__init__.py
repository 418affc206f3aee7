"""The background jobs of the workers nursery, one module each: `async def run(...,
*, task_status)` that reports started once it runs and stops when cancelled."""
