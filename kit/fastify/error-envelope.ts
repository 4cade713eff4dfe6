import type {
  FastifyBaseLogger,
  FastifyError,
  FastifyInstance,
  FastifyTypeProvider,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerBase,
} from 'fastify';
import { CorralError, ErrorCode, errorEnvelope, ERROR_STATUS, isCorralError } from '../../protocol/errors.js';

/**
 * Makes every error a fastify app answers with the one envelope `{ error: { code, message } }`:
 * schema failures become CORRAL_ERR_VALIDATION naming the field, oversize bodies
 * CORRAL_ERR_PAYLOAD_TOO_LARGE, CorralErrors that carry a status keep their code and status; anything else is
 * CORRAL_ERR_INTERNAL with a generic message (the detail goes to the log, never the wire).
 */
export function installErrorEnvelope<
  S extends RawServerBase,
  L extends FastifyBaseLogger,
  P extends FastifyTypeProvider,
>(app: FastifyInstance<S, RawRequestDefaultExpression<S>, RawReplyDefaultExpression<S>, L, P>): void {
  app.setErrorHandler((err: FastifyError | CorralError | Error, request, reply) => {
    const { code, message, status } = classify(err);
    if (status >= 500) request.log.error({ err }, 'request failed');
    else request.log.debug({ code, message }, 'request refused');
    void reply.code(status).send(errorEnvelope(code, message));
  });
  app.setNotFoundHandler((_request, reply) => {
    void reply.code(404).send(errorEnvelope(ErrorCode.NOT_FOUND, 'no such route'));
  });
}

function classify(err: FastifyError | CorralError | Error): {
  code: string;
  message: string;
  status: number;
} {
  if (isCorralError(err) && err.statusCode !== undefined)
    return { code: err.code, message: err.message, status: err.statusCode };
  const { code, message } = classifyOther(err);
  return { code, message, status: ERROR_STATUS[code] };
}

function classifyOther(err: FastifyError | Error): { code: ErrorCode; message: string } {
  const fe = err as FastifyError;
  if (fe.validation) {
    const context = fe.validationContext ?? 'body';
    return {
      code: ErrorCode.VALIDATION,
      message: `${context}${fe.message.startsWith(context) ? fe.message.slice(context.length) : `: ${fe.message}`}`,
    };
  }
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return { code: ErrorCode.PAYLOAD_TOO_LARGE, message: 'request body too large' };
  if (
    fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ||
    fe.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
    fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY'
  ) {
    return { code: ErrorCode.BAD_REQUEST, message: fe.message };
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return { code: ErrorCode.BAD_REQUEST, message: fe.message };
  }
  return { code: ErrorCode.INTERNAL, message: 'internal error' };
}
