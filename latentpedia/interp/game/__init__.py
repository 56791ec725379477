"""The game (issue 12): puzzles, held-out scoring, points, boards. No web here.

holdout  a latent's fixed held-out set (never shown to players) and scoring on it
rules    points, near-duplicates, streaks, the daily puzzle, the share line
play     `Game`: puzzles, submit / vote / skip, leaderboards, player pages, campaign progress
"""
