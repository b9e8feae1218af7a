"""The list of compatibility fixes that changed something in this process."""
APPLIED: list[str] = []


def applied(name: str) -> None:
    """Record that fix ``name`` changed something (once)."""
    if name not in APPLIED:
        APPLIED.append(name)
