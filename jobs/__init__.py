"""What a job does to one content id, and how jobs reach the queue."""
