"""The command palette's provider: every action of the app, by name."""

from __future__ import annotations

from functools import partial

from textual.command import Hit, Hits, Provider

ACTIONS = (
    ("Spawn an agent by skill", "spawn"),
    ("Inject a message", "inject"),
    ("Wipe the selected agent", "wipe"),
    ("Resume the selected agent", "resume"),
    ("Pause or resume the swarm", "pause"),
    ("Approve the waiting human gate", "approve"),
    ("Follow the tail on or off", "follow"),
    ("Filter the event stream", "filter"),
    ("Show the keys", "help"),
)


class SisyphusCommands(Provider):
    """Offers the app's actions in the command palette."""

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action in ACTIONS:
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title),
                          partial(self.app.run_action, action), help=f"action: {action}")
