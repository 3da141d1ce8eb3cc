"""A tiny terminal emulator for tests: what a screen shows after some output.

It understands exactly what a progress display may send — printable text,
``\\r``, ``\\n``, cursor up/down/forward/back (``ESC[nA/B/C/D``), erase below
(``ESC[J``), erase line (``ESC[K``) — and ignores colours and private modes.
Anything else raises, so a test notices a sequence the display should not use.
Scrolled-off lines are kept (like a scrollback buffer), so the whole session
can be read back as the user would see it.
"""

from __future__ import annotations

import re

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


class Screen:
    """Scrollback + cursor; feed it terminal output, read back its lines."""

    def __init__(self, width: int = 80) -> None:
        self.width = width
        self.rows: list[list[str]] = [[]]
        self.row = 0
        self.col = 0

    def feed(self, data: str) -> None:
        """Interpret ``data`` as if written to the terminal."""
        pos = 0
        while pos < len(data):
            match = _CSI.match(data, pos)
            if match:
                self._csi(match.group(1), match.group(2))
                pos = match.end()
                continue
            char = data[pos]
            pos += 1
            if char == "\x1b":
                raise ValueError(f"unexpected escape sequence at {data[pos - 1 : pos + 8]!r}")
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self.col = 0  # a pty translates \n into \r\n
                self._down()
            else:
                if self.col >= self.width:  # automatic wrap
                    self.col = 0
                    self._down()
                self._put(char)

    def lines(self) -> list[str]:
        """Every line of scrollback and screen, trailing spaces removed."""
        text = ["".join(row).rstrip() for row in self.rows]
        while text and not text[-1]:
            text.pop()
        return text

    def _down(self) -> None:
        self.row += 1
        while len(self.rows) <= self.row:
            self.rows.append([])

    def _put(self, char: str) -> None:
        line = self.rows[self.row]
        while len(line) <= self.col:
            line.append(" ")
        line[self.col] = char
        self.col += 1

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?") or final == "m":
            return  # private modes (synchronized output), colours
        n = int(params) if params.isdigit() else (0 if final in "JK" else 1)
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            for _ in range(n):
                self._down()
        elif final == "C":
            self.col = min(self.width - 1, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "J" and n == 0:
            del self.rows[self.row][self.col :]
            for row in self.rows[self.row + 1 :]:
                row.clear()
        elif final == "K" and n == 0:
            del self.rows[self.row][self.col :]
        else:
            raise ValueError(f"unexpected control sequence ESC[{params}{final}")
