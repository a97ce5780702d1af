"""English."""
TEXTS = {
    "cloud_down": "The cloud is offline: your tasks are suspended and will resume when it is back.",
    "cloud_up": "The cloud is back: resuming your tasks.",
    "queued_while_down": "Got it. The cloud is offline, so this task is queued; it will run when the cloud is back.",
    "brainstem_without_model": "Brainstem mode without a local model ({why}): fixed notices only.",
    "litellm_down": "The LiteLLM model router is down ({error}). Calls now go directly to the providers with "
                    "backup keys, and Claude Code has been asked to repair it.",
    "litellm_recovered": "LiteLLM is back: model calls go through it again.",
    "litellm_repair_failed": "The LiteLLM repair did not bring it back ({detail}). Staying on direct calls with "
                             "backup keys; next repair attempt in {retry_in}.",
    "litellm_repair_exhausted": "LiteLLM is still down and {count} repairs this hour did not help: staying on "
                                "direct calls. Please have a look.",
    "paid_tier_started": "Today's first paid model call (P2): {reason}.",
    "budget_exhausted": "The {period} budget for paid models (${cap:.2f}) is used up: paid calls are refused "
                        "until it resets; free calls go on.",
}
