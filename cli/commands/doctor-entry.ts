/** `protoctl doctor` is defined in cli/commands/doctor.ts; this adapts it to the lazy command table. */
import type { Command } from "commander";

export async function command(_name: string): Promise<Command> {
  const { doctorCommand } = await import("./doctor.js");
  return doctorCommand();
}
