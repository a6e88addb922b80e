"""The host the lab runs on: Docker, the pinned tools (kind, kubectl, helm), Go builds, the doctor."""
