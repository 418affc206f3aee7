"""GitLab's internal API (`/api/v4/internal`), which the pre- and post-receive hooks ask."""
