"""Grading: reading submissions, the grader's own checks, scores, gradebook and feedback."""
