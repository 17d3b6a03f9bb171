"""Test peer: a simulated Asterisk 20 PBX speaking real AMI and FastAGI over TCP on 127.0.0.1.

Public API: :class:`PbxSim` (start/close, ``ami_port``, ``call()``, ``add_phone()``, ``cut_ami()``,
``refuse_agi``, ``wait_event()``, ``recordings``, ``said``: every SAY NUMBER as :class:`Said`), the
actors :class:`Caller` and :class:`Phone`, and the caller's steps :class:`Press`, :class:`Silence`,
:class:`HangUp`. See ``acd/pbxsim/pbx.py`` for the model.
"""

from .agi import Said, say_number_files
from .pbx import CallHandle, CallResult, PbxSim
from .scenario import Caller, HangUp, Phone, Press, Silence

__all__ = [
    "CallHandle",
    "CallResult",
    "Caller",
    "HangUp",
    "PbxSim",
    "Phone",
    "Press",
    "Said",
    "Silence",
    "say_number_files",
]
