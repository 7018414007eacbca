"""Token ids to streamed text: incremental detokenization with stop strings held back until decided.

Example:
    >>> text = TextAssembler(tokenizer, stop=("\\n\\n",))
    >>> delta, stopped = text.add(token_id)
"""

from __future__ import annotations


class TextAssembler:
    """Accumulates a request's tokens and says what new text may be shown, and whether a stop string hit."""

    def __init__(self, tokenizer, stop: tuple[str, ...] = (), incremental: bool = True) -> None:
        self.tokenizer = tokenizer
        # Without streaming or stop strings nothing needs the text before the end: decode once, then.
        self.incremental = incremental or bool(stop)
        self.stop = tuple(s for s in stop if s)
        self.tokens: list[int] = []
        self.shown = 0  # characters already handed out
        self.text = ""
        self.stopped = False

    def _holdback(self) -> int:
        # A tail that could still grow into a stop string must not be shown yet.
        longest = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(self.text)), 0, -1):
                if self.text.endswith(stop[:size]):
                    longest = max(longest, size)
                    break
        return longest

    def add(self, token: int) -> tuple[str, bool]:
        """Add one token; returns (text safe to show now, whether a stop string ended the answer)."""
        self.tokens.append(token)
        if not self.incremental:
            return "", False
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return "", False  # an incomplete multi-byte character: wait for the next token
        self.text = text
        hits = [text.find(stop, max(0, self.shown - len(stop))) for stop in self.stop]
        hits = [h for h in hits if h >= 0]
        if hits:
            self.text = text[: min(hits)]
            self.stopped = True
            return self.flush(), True
        visible = len(text) - self._holdback()
        delta = text[self.shown : visible] if visible > self.shown else ""
        self.shown += len(delta)
        return delta, False

    def flush(self) -> str:
        """Whatever is left to show (at the end of the answer)."""
        if not self.incremental:
            self.text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        delta = self.text[self.shown :]
        self.shown = len(self.text)
        return delta
