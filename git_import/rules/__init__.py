"""Pure rules: selection, plan, URL/ref/slug rules, worker configuration checks. No process, no socket."""
