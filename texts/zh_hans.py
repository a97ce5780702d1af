"""简体中文。"""
TEXTS = {
    "cloud_down": "云端离线，任务已挂起",
    "cloud_up": "云端已恢复，任务恢复中",
    "queued_while_down": "收到。云端目前离线，任务已排队，云端恢复后执行。",
    "brainstem_without_model": "脑干模式未加载本地模型（{why}），仅使用固定通知。",
    "litellm_down": "模型路由 LiteLLM 故障（{error}），已改用备用 Key 直连，并请 Claude Code 修复。",
    "litellm_recovered": "LiteLLM 已恢复，模型调用重新经由 LiteLLM 路由。",
    "litellm_repair_failed": "LiteLLM 修复未成功（{detail}），继续以备用 Key 直连；{retry_in}后再次尝试修复。",
    "litellm_repair_exhausted": "LiteLLM 仍然故障，本小时内已修复 {count} 次未果，维持直连模式，请人工检查。",
    "paid_tier_started": "今日首次使用付费模型（P2）：{reason}。",
    "budget_exhausted": "付费模型的{period}预算（${cap:.2f}）已用完：付费调用暂停至重置，免费调用照常。",
}
