"""Where visas come from: minted from our decisions, relayed from remote sources, collected."""
