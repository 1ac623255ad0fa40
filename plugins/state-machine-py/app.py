"""The plugin's entry module for componentize-py."""

from state_machine import StateMachine
from weir_guest import export

Operator, State = export(StateMachine)
