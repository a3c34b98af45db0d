"""The CLI's exit codes, one table for every command (the README lists them)."""

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    UNSOLVED = 1  # `kuberl run`: the experiment ended (budget spent, stopped) without reaching its target
    USAGE = 2  # bad arguments or an invalid manifest (argparse uses 2 as well)
    API_FAILED = 3  # a role could not be reached, or refused or failed the call (the message says which)
    RUN_FAILED = 4  # `kuberl run`: the local roles failed (a replica kept crashing, the timeout passed)
