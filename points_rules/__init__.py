"""points_rules: the pure, versioned methodology engine of carbon-points.

Load methodology documents (YAML), evaluate actions into outcomes (status, integer grams of CO2e,
integer points), explain any outcome from its stored inputs, and pick the version in force with
a registry. No I/O beyond reading documents; no web, database, Redis or HTTP imports.
"""

from points_rules._diff import Change, diff
from points_rules._errors import InvalidActionError, MethodologyError, NoMethodologyError, Problem
from points_rules._evaluate import (
    CAPPED,
    CREDITED,
    EXPIRED,
    IMPLAUSIBLE,
    INELIGIBLE,
    Action,
    CapWindow,
    Outcome,
    Reason,
    Usage,
    apply_caps,
    cap_windows,
    evaluate,
    evaluate_uncapped,
    usage_key,
)
from points_rules._explain import Trace, explain
from points_rules._methodology import (
    Methodology,
    content_hash,
    decode_document,
    load_library,
    load_methodology,
    parse_methodology,
)
from points_rules._registry import Registry, default_registry

__all__ = [
    "CAPPED",
    "CREDITED",
    "EXPIRED",
    "IMPLAUSIBLE",
    "INELIGIBLE",
    "Action",
    "CapWindow",
    "Change",
    "InvalidActionError",
    "Methodology",
    "MethodologyError",
    "NoMethodologyError",
    "Outcome",
    "Problem",
    "Reason",
    "Registry",
    "Trace",
    "Usage",
    "apply_caps",
    "cap_windows",
    "content_hash",
    "decode_document",
    "default_registry",
    "diff",
    "evaluate",
    "evaluate_uncapped",
    "explain",
    "load_library",
    "load_methodology",
    "parse_methodology",
    "usage_key",
]
