// permissions: filesystem:read
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';

interface QueryArgs {
  file: string;
  pointer: string;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export function resolvePointer(document: Json, pointer: string): Json | undefined {
  if (pointer === '' || pointer === '/') {
    return document;
  }
  let current: Json | undefined = document;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (current === null || typeof current !== 'object') {
      return undefined;
    }
    current = Array.isArray(current) ? current[Number(key)] : (current as { [key: string]: Json })[key];
  }
  return current;
}

export async function run(args: QueryArgs): Promise<{ value: Json | undefined }> {
  if (path.extname(args.file) !== '.json') {
    throw new Error('only .json files are read');
  }
  const text: string = await readFile(args.file, 'utf8');
  return { value: resolvePointer(JSON.parse(text) as Json, args.pointer) };
}
