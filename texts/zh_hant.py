"""繁體中文。"""
TEXTS = {
    "cloud_down": "雲端離線，任務已掛起",
    "cloud_up": "雲端已恢復，任務恢復中",
    "queued_while_down": "收到。雲端目前離線，任務已排隊，雲端恢復後執行。",
    "brainstem_without_model": "腦幹模式未載入本地模型（{why}），僅使用固定通知。",
    "litellm_down": "模型路由 LiteLLM 故障（{error}），已改用備用 Key 直連，並請 Claude Code 修復。",
    "litellm_recovered": "LiteLLM 已恢復，模型調用重新經由 LiteLLM 路由。",
    "litellm_repair_failed": "LiteLLM 修復未成功（{detail}），繼續以備用 Key 直連；{retry_in}後再次嘗試修復。",
    "litellm_repair_exhausted": "LiteLLM 仍然故障，本小時內已修復 {count} 次未果，維持直連模式，請人工檢查。",
    "paid_tier_started": "今日首次使用付費模型（P2）：{reason}。",
    "budget_exhausted": "付費模型的{period}預算（${cap:.2f}）已用完：付費調用暫停至重置，免費調用照常。",
}
