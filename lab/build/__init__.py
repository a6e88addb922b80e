"""Images: the lab's application images (from Debian packages offline) and the kind node image."""
