/**
 * pino logger factory: JSON lines by default (daemons, files, CI); pretty
 * when writing to a TTY or when PROTOCTL_LOG_FORMAT=pretty.
 */
import { type Logger, type LoggerOptions, pino } from "pino";

export type { Logger };

export interface LoggerConfig {
  name: string;
  level?: string;
  /** "json" | "pretty" | "auto" (pretty on a TTY). */
  format?: string;
  /** A file to write to instead of stderr. */
  file?: string;
}

export function createLogger(cfg: LoggerConfig): Logger {
  const level = cfg.level ?? process.env.PROTOCTL_LOG_LEVEL ?? "info";
  const format = cfg.format ?? process.env.PROTOCTL_LOG_FORMAT ?? "auto";
  const opts: LoggerOptions = { name: cfg.name, level, base: { pid: process.pid, component: cfg.name } };
  const pretty = format === "pretty" || (format === "auto" && !cfg.file && process.stderr.isTTY === true);
  if (pretty) {
    return pino({
      ...opts,
      transport: {
        target: "pino-pretty",
        options: { destination: 2, colorize: true, translateTime: "SYS:HH:MM:ss.l" },
      },
    });
  }
  const dest = cfg.file
    ? pino.destination({ dest: cfg.file, mkdir: true, sync: false })
    : pino.destination(2);
  return pino(opts, dest);
}

/** A logger that discards everything (unit tests). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
