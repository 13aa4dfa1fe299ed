/** A payload that does not decode in the content format it claims (the endpoint answers 4.00). */
export class ContentFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContentFormatError';
  }
}
