"""Project-wide pieces every package may import (they import nothing of ours and nothing heavy):
`walt_probe.errors`, the one error surface of the project."""
