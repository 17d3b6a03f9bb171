"""Adapter: prompt sounds — the texts every flow and the call's life can play, and a generator
that turns them into files Asterisk plays (8 kHz mono) with Debian's espeak-ng and sox.

Sounds are named without an extension, relative to Asterisk's sounds directory
(`acd/main/greeting-ru` → `<sounds_dir>/acd/main/greeting-ru.wav`). A site starts with the
synthetic prompts and replaces any file with a recording of the same name; `generate` never
overwrites a file unless asked to.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from acd.config.flows import IvrFlow

# The prompts of the call's life after the IVR (not part of a flow): sound stem -> language -> text.
COMMON: Mapping[str, Mapping[str, str]] = {
    "position": {
        "ru": "Ваш номер в очереди",
        "en": "Your position in the queue is",
    },
    "callback-offer": {
        "ru": "Чтобы мы перезвонили вам, не теряя вашего места в очереди, нажмите звёздочку.",
        "en": "To be called back without losing your place in the queue, press star.",
    },
    "callback-booked": {
        "ru": "Спасибо! Мы перезвоним вам, как только освободится менеджер. До свидания.",
        "en": "Thank you! We will call you back as soon as a manager is free. Goodbye.",
    },
    "closed": {
        "ru": "Сейчас мы не работаем. Чтобы мы перезвонили вам в рабочее время, нажмите 1. "
        "Чтобы оставить сообщение, оставайтесь на линии.",
        "en": "We are closed now. To be called back when we open, press 1. To leave a message, stay on the line.",
    },
    "overflow": {
        "ru": "Все менеджеры заняты. Соединяю с первым освободившимся.",
        "en": "All our managers are busy. Connecting you to the first one available.",
    },
    "overflow-callback": {
        "ru": "Все менеджеры заняты. Чтобы мы перезвонили вам, нажмите 1. Чтобы подождать ещё, оставайтесь на линии.",
        "en": "All our managers are busy. To be called back, press 1. To keep waiting, stay on the line.",
    },
    "expected-wait": {
        "ru": "Примерное время ожидания —",
        "en": "Your expected wait is about",
    },
    "less-than-minute": {"ru": "меньше минуты.", "en": "less than a minute."},
    "minutes-1": {"ru": "минута.", "en": "minute."},
    "minutes-2": {"ru": "минуты.", "en": "minutes."},
    "minutes-5": {"ru": "минут.", "en": "minutes."},
    "voicemail": {
        "ru": "Пожалуйста, оставьте сообщение после сигнала и нажмите решётку. Мы вам перезвоним.",
        "en": "Please leave a message after the tone, then press hash. We will call you back.",
    },
    "voicemail-saved": {
        "ru": "Спасибо, ваше сообщение сохранено. До свидания.",
        "en": "Thank you, your message is saved. Goodbye.",
    },
    # A callback's manager, on the line while a machine answered the customer's leg
    # ([acd-callback]): a dropped line with no word sounds like a fault.
    "callback-machine": {
        "ru": "Автоответчик. Перезвоним позже.",
        "en": "Answering machine; we will call again later.",
    },
    "callback-machine-last": {
        "ru": "Автоответчик. Это была последняя попытка.",
        "en": "Answering machine; that was the last attempt.",
    },
}
VOICES = {"ru": "ru", "en": "en-gb"}  # espeak-ng voice per site language


def common_sound(stem: str, lang: str) -> str:
    return f"acd/common/{stem}-{lang}"


def all_prompts(flows: Iterable[IvrFlow], languages: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """Every (sound, language, text) a deployment can play, each sound once."""
    seen: set[str] = set()
    for flow in flows:
        for sound, lang, text in flow.prompts():
            if sound not in seen:
                seen.add(sound)
                yield sound, lang, text
    for lang in languages:
        for stem, texts in COMMON.items():
            text = texts.get(lang) or texts["en"]
            yield common_sound(stem, lang), lang, text


@dataclass(frozen=True, slots=True)
class Generated:
    sound: str
    path: Path
    created: bool  # False: a file was already there and was kept


class ToolMissing(RuntimeError):
    """espeak-ng or sox is not installed (Debian: apt-get install espeak-ng sox)."""


def tools_present() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


async def generate(
    prompts: Iterable[tuple[str, str, str]],
    sounds_dir: Path,
    *,
    fmt: str = "wav",
    force: bool = False,
) -> list[Generated]:
    """Synthesise each prompt to `<sounds_dir>/<sound>.<fmt>` (wav: 8 kHz mono 16-bit; gsm)."""
    if not tools_present():
        raise ToolMissing("espeak-ng and sox are needed: apt-get install -y espeak-ng sox")
    if fmt not in ("wav", "gsm"):
        raise ValueError("format: wav or gsm")
    out: list[Generated] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (sound, lang, text) in enumerate(prompts):
            target = sounds_dir / f"{sound}.{fmt}"
            if target.exists() and not force:
                out.append(Generated(sound, target, False))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            raw = Path(tmp) / f"{i}.wav"
            await _run("espeak-ng", "-v", VOICES.get(lang, lang), "-s", "150", "-w", str(raw), text)
            encoding = ["-e", "signed-integer", "-b", "16"] if fmt == "wav" else []
            await _run("sox", str(raw), "-r", "8000", "-c", "1", *encoding, str(target))
            out.append(Generated(sound, target, True))
    return out


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err.decode(errors='replace').strip()}")


__all__ = ["COMMON", "Generated", "ToolMissing", "all_prompts", "common_sound", "generate", "tools_present"]
