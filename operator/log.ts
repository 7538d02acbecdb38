/** The one root logger: pino JSON on stdout, level from LOG_LEVEL, secrets redacted. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function rootLogger(name: string): Logger {
  return pino({
    name,
    level: process.env['LOG_LEVEL'] ?? 'info',
    redact: {
      paths: ['*.token', '*.privateKey', '*.password', 'token', 'privateKey'],
      censor: '[redacted]',
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
