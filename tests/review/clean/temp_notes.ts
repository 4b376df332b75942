// permissions: environment
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Note {
  title: string;
  body: string;
}

const AUTHOR_ENV: string = 'NOTES_AUTHOR';

export function saveNote(note: Note): string {
  const directory = mkdtempSync(join(tmpdir(), 'notes-'));
  const file = join(directory, 'note.md');
  const author = process.env[AUTHOR_ENV] ?? 'anonymous';
  writeFileSync(join(tmpdir(), 'last-note.txt'), note.title);
  return file + ' by ' + author;
}
