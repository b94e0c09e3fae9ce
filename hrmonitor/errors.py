"""One exception tree, rooted at :class:`HrmonitorError`.

Foreign exceptions (dnspython, SQLAlchemy, aiosmtplib, OSError) are translated
into these at the adapter edge, so services and the CLI handle one family.
Where a built-in fits, the error derives from it too, so ``except TimeoutError``
keeps working for callers that think in built-ins.
"""

from __future__ import annotations

from collections.abc import Sequence


class HrmonitorError(Exception):
    """Root of every error hrmonitor raises on purpose."""


class ConfigError(HrmonitorError, ValueError):
    """A config or rule file is missing or invalid.

    The message always names the file, the key path and the problem, e.g.
    ``config.toml: pools.high-risk.ips[1]: '203.0.113.300' is not an IP address``.
    """

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")
        # Every problem this error stands for, one line each in str() order.
        self.problems: tuple[ConfigError, ...] = (self,)


class ConfigProblems(ConfigError):
    """Several config or rule file problems found in one pass: str() is one line per problem.

    ``file``, ``key`` and ``problem`` are the first problem's; ``problems`` has them all.
    """

    def __init__(self, problems: Sequence[ConfigError]) -> None:
        first = problems[0]
        super().__init__(first.file, first.key, first.problem)
        self.problems = tuple(each for error in problems for each in error.problems)

    def __str__(self) -> str:
        return "\n".join(ConfigError.__str__(error) for error in self.problems)


def raise_problems(problems: Sequence[ConfigError]) -> None:
    """Raise nothing for no problems, the problem itself for one, ConfigProblems for more."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigProblems(problems)


class RuleError(ConfigError):
    """A rule file (catalogue, routing, feedback, bounce patterns) is invalid."""


class LookupTimeout(HrmonitorError, TimeoutError):
    """A DNS query got no answer within its timeout and retries."""


class StoreError(HrmonitorError):
    """The database refused or failed an operation."""


class BindError(HrmonitorError, OSError):
    """A source IP could not be bound (EADDRNOTAVAIL and kin): an error about that IP."""


class DeliveryError(HrmonitorError):
    """A delivery attempt failed in a way the queue runner must record."""


class OperatorError(HrmonitorError, ValueError):
    """An operator command asked for something impossible (unknown IP, bad transition)."""
