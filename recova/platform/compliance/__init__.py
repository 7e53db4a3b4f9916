"""The compliance gate every outbound contact passes: rule packs, tenant policy, simulation."""
