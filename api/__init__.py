"""The graphrisk risk API: scores for onboarding, rings and explanations for investigators."""
