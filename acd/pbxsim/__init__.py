"""Test peer: a simulated Asterisk 20 PBX speaking real AMI and FastAGI over TCP on 127.0.0.1.

Public API: :class:`PbxSim` (start/close, ``ami_port``, ``call()``, ``add_phone()``, ``cut_ami()``,
``refuse_agi``, ``wait_event()``, ``recordings``), the actors :class:`Caller` and :class:`Phone`, and the caller's steps
:class:`Press`, :class:`Silence`, :class:`HangUp`. See ``acd/pbxsim/pbx.py`` for the model.
"""

from .pbx import CallHandle, CallResult, PbxSim
from .scenario import Caller, HangUp, Phone, Press, Silence

__all__ = ["CallHandle", "CallResult", "Caller", "HangUp", "PbxSim", "Phone", "Press", "Silence"]
