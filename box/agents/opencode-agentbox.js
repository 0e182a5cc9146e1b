// agentbox: tells the box's ctl daemon what OpenCode is doing (working, waiting for the
// user, idle, error), so that `agentbox list` on the host shows it. Baked into the box
// image; a failure here never disturbs OpenCode.
export const AgentboxState = async ({ $ }) => {
  let last = "";
  const report = async (state) => {
    if (state === last) return;
    last = state;
    try {
      await $`agentbox-ctl agent-state ${state} --agent opencode`.quiet().nothrow();
    } catch {}
  };
  return {
    event: async ({ event }) => {
      switch (event.type) {
        case "session.status": {
          const kind = event.properties?.status?.type;
          if (kind === "busy" || kind === "retry") await report("working");
          else if (kind === "idle") await report("idle");
          break;
        }
        case "session.idle":
          await report("idle");
          break;
        case "permission.asked":
        case "permission.updated":
        case "question.asked":
          await report("waiting");
          break;
        case "permission.replied":
          await report("working");
          break;
        case "session.error":
          await report("error");
          break;
      }
    },
  };
};
