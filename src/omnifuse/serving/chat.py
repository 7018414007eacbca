"""`omnifuse chat`: one prompt answered and streamed, or (no prompt) an interactive session.

The session keeps the conversation; commands: `/image PATH`, `/audio PATH`, `/video PATH` (or
`/<modality> PATH` for any modality of the model) attach a file to the next message, `/reset` starts
over, `/quit` (or end of input) leaves.

Example:
    $ omnifuse chat --model runs/demo/model --image cat.png "what color is the circle?"
    $ printf '/image cat.png\\nwhat color?\\n/reset\\nhello\\n' | omnifuse chat --model runs/demo/model
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from transformers import TextStreamer

from omnifuse.modeling.folder import load_omni_folder
from omnifuse.safety.limits import check_count

PROMPT = "you> "


class _WriterStreamer(TextStreamer):
    """transformers' TextStreamer, writing to any text stream and keeping the answer."""

    def __init__(self, tokenizer, out: TextIO) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.out, self.pieces = out, []

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.pieces.append(text)
        self.out.write(text + ("\n" if stream_end else ""))
        self.out.flush()


def media_parts(media: dict[str, str | None]) -> list[dict]:
    """`{"image": "cat.png"}` -> content parts; a missing file is a FileNotFoundError naming the flag."""
    parts = []
    for kind, path in media.items():
        if path:
            if not Path(path).is_file():
                raise FileNotFoundError(f"--{kind} {path}: no such file")
            parts.append({"type": kind, "path": str(path)})
    return parts


def build_messages(prompt: str, media: dict[str, str | None]) -> list[dict]:
    return [{"role": "user", "content": [*media_parts(media), {"type": "text", "text": prompt}]}]


def answer(model, processor, messages: list[dict], out: TextIO, max_new_tokens: int = 64) -> str:
    """Generate the assistant's next turn for `messages`, streaming it to `out`; returns the text."""
    check_count("max_new_tokens (--max-new-tokens)", max_new_tokens)
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True)
    tok = processor.tokenizer
    streamer = _WriterStreamer(tok, out)
    model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        streamer=streamer,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return "".join(streamer.pieces).strip()


def chat(
    model_dir: str | Path,
    prompt: str,
    media: dict[str, str | None],
    max_new_tokens: int = 64,
    out: TextIO | None = None,
) -> str:
    """One prompt (with optional media files), the answer streamed to `out` (default: stdout)."""
    messages = build_messages(prompt, media)
    model, processor = load_omni_folder(model_dir)
    return answer(model, processor, messages, out or sys.stdout, max_new_tokens)


class ChatSession:
    """An interactive conversation: keeps the turns, attaches media files with slash commands."""

    def __init__(self, model, processor, out: TextIO, max_new_tokens: int = 64) -> None:
        self.model, self.processor, self.out = model, processor, out
        self.max_new_tokens = max_new_tokens
        self.messages: list[dict] = []
        self.pending: list[dict] = []

    def handle(self, line: str) -> bool:
        """Process one input line; False when the session should end."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return self._command(line)
        self.messages.append({"role": "user", "content": [*self.pending, {"type": "text", "text": line}]})
        self.pending = []
        self.out.write("model> ")
        try:
            reply = answer(self.model, self.processor, self.messages, self.out, self.max_new_tokens)
        except (ValueError, FileNotFoundError) as err:  # bad media: say so and drop that turn
            self.messages.pop()
            self.out.write(f"\nerror: {' '.join(str(err).split())}\n")
            return True
        self.messages.append({"role": "assistant", "content": reply})
        return True

    def _command(self, line: str) -> bool:
        name, _, argument = line[1:].partition(" ")
        if name in ("quit", "exit"):
            return False
        if name == "reset":
            self.messages, self.pending = [], []
            self.out.write("(conversation reset)\n")
        elif name in self.processor.specs:
            path = Path(argument.strip()).expanduser()
            if not path.is_file():
                self.out.write(f"error: /{name} {argument.strip()}: no such file\n")
            else:
                self.pending.append({"type": name, "path": str(path)})
                self.out.write(f"({name} {path.name} attached to your next message)\n")
        else:
            commands = ", ".join(f"/{n} PATH" for n in self.processor.specs)
            self.out.write(f"error: unknown command /{name}; commands: {commands}, /reset, /quit\n")
        return True


def interactive(
    model_dir: str | Path,
    media: dict[str, str | None],
    max_new_tokens: int = 64,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """Run a session over `stdin` until /quit or end of input; returns the number of answers given."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    first = media_parts(media)
    model, processor = load_omni_folder(model_dir)
    session = ChatSession(model, processor, out, max_new_tokens)
    session.pending = first
    if stdin.isatty():
        out.write(
            f"omnifuse chat: type a message; /{' PATH, /'.join(processor.specs)} PATH attach media, /reset, /quit\n"
        )
    for line in stdin:
        if not session.handle(line):
            break
    return sum(1 for m in session.messages if m["role"] == "assistant")
