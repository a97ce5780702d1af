// Omni-Orchestrator's front door in OpenClaw (checked with OpenClaw 2026.9.6).
// Every Telegram message is routed to the agent "inbox" (see ../openclaw.json5: bindings). This hook
// claims each of its user turns before OpenClaw's agent runs: no model call, no reply, while the user's
// message is still written to the session, so `openclaw mcp serve` still emits it as an event and
// `messages_read` still returns it. The orchestrator answers through the bridge's `messages_send`.
// Needs session.sendPolicy deny for the channel too: without it OpenClaw posts its fallback text
// ("I finished the turn, but it did not produce a visible reply…") for a claimed turn.
import { definePluginEntry } from "openclaw/plugin-sdk/plugin-entry";

export default definePluginEntry({
  id: "omni-silent",
  name: "Omni silent inbox",
  description: "Keeps OpenClaw's agent silent (no model call) in the orchestrator's inbox agent.",
  register(api) {
    const agents = new Set((api.pluginConfig && api.pluginConfig.agents) || ["inbox"]);
    api.on("before_agent_reply", (event, ctx) => {
      if (agents.has(ctx && ctx.agentId)) {
        return { handled: true };
      }
    }, { eligibleTriggers: ["user"] });
  },
});
