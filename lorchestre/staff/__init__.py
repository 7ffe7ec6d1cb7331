"""The staff area (spec §8): consent statistics, CNIL exports, the processing register."""
